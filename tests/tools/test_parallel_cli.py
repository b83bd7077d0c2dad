"""--jobs and --memory-budget of ckpt-convert, ckpt-inspect --stats and
ckpt-diff: the same output for every number of jobs, values checked against
numpy, and a conversion's peak memory bounded by the budget, not by the
checkpoint's size."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

CONVERT, INSPECT, DIFF = sys.argv[1:4]
JOBS = ("1", "2", "4")
MiB = 1 << 20


def run(*args):
    done = subprocess.run([str(a) for a in args], capture_output=True, check=False)
    return done.returncode, done.stdout, done.stderr


def peak_rss_bytes(*args):
    """Runs the command under GNU time and returns its exit status, its peak
    resident set size and its stderr. (wait4 from Python would not do: a
    child keeps the peak of the interpreter it was forked from across exec.)"""
    with tempfile.NamedTemporaryFile("r") as report:
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *[str(a) for a in args]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        return done.returncode, int(report.read().split()[-1]) * 1024, done.stderr


def tree(path):
    """Relative path -> bytes of every file under path (or the file itself)."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return {"": f.read()}
    found = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = f.read()
    return found


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes), read by hand from the format description."""
    with open(path, "rb") as f:
        data = f.read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    start = 8 + length
    return {name: (e["dtype"], e["shape"], data[start + e["data_offsets"][0]:start + e["data_offsets"][1]])
            for name, e in header.items()}


class Parallel(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        rng = np.random.default_rng(7)
        # Big tensors (over the 8 MiB copy buffer and the 4 Mi-element ranges
        # of --stats) among many small ones of several dtypes.
        self.arrays = {"big.a": rng.standard_normal(5_000_000).astype(np.float32),
                       "big.b": rng.standard_normal((1500, 1500)).astype(np.float64)}
        for i in range(60):
            dtype = [np.float32, np.float16, np.int64, np.float64][i % 4]
            self.arrays[f"small.{i:02}"] = (rng.standard_normal((i % 5 + 1, 7)) * 100).astype(dtype)
        self.arrays["big.a"][4_500_000] = np.nan
        self.source = self.path("src")
        os.mkdir(self.source)
        for name, array in self.arrays.items():
            np.save(os.path.join(self.source, name + ".npy"), array)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def convert_each_jobs(self, source, destination, *flags):
        outputs = {}
        for jobs in JOBS:
            out = self.path(f"j{jobs}-{destination}")
            code, _, err = run(CONVERT, source, out, "--jobs", jobs, "-q", *flags)
            self.assertEqual(code, 0, err)
            outputs[jobs] = out
        return outputs

    def test_conversions_write_the_same_bytes_for_every_jobs(self):
        single = self.convert_each_jobs(self.source, "one.safetensors")
        sharded = self.convert_each_jobs(single["2"], "set", "--to", "safetensors-sharded", "--max-shard-size", "9MB")
        back = self.convert_each_jobs(sharded["4"], "back.safetensors")
        cast = self.convert_each_jobs(self.source, "bf16.safetensors", "--dtype", "bf16", "--memory-budget", "1MiB")
        for outputs in (single, sharded, back, cast):
            contents = [tree(outputs[jobs]) for jobs in JOBS]
            self.assertEqual(contents[0], contents[1])
            self.assertEqual(contents[0], contents[2])
        self.assertGreater(len(tree(sharded["1"])), 3)  # several shards and the index
        self.assertEqual(tree(back["1"]), tree(single["1"]))  # sharded and back: the same file
        tensors = read_safetensors(single["1"])
        self.assertEqual(sorted(tensors), sorted(self.arrays))
        for name, array in self.arrays.items():
            self.assertEqual(tensors[name][1], list(array.shape))
            self.assertEqual(tensors[name][2], array.astype(array.dtype.newbyteorder("<")).tobytes(), name)
        # bf16: the top half of float32 rounded to nearest even (NaN stays NaN).
        bits = self.arrays["big.a"].view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        got = np.frombuffer(read_safetensors(cast["1"])["big.a"][2], dtype="<u2")
        finite = np.isfinite(self.arrays["big.a"])
        self.assertTrue(np.array_equal(got[finite], rounded[finite]))
        self.assertTrue(np.all((got[~finite] & 0x7FC0) == 0x7FC0))  # quiet NaN

    def test_stats_are_the_same_for_every_jobs_and_match_numpy(self):
        converted = self.path("stats.safetensors")
        self.assertEqual(run(CONVERT, self.source, converted, "-q")[0], 0)
        reports = []
        for jobs in JOBS:
            code, out, err = run(INSPECT, converted, "--stats", "--json", "--jobs", jobs)
            self.assertEqual(code, 0, err)
            reports.append(out)
        self.assertEqual(reports[0], reports[1])
        self.assertEqual(reports[0], reports[2])
        stats = {t["name"]: t["stats"] for t in json.loads(reports[0])["tensors"]}
        for name in ("big.a", "big.b", "small.03", "small.10"):
            values = self.arrays[name].astype(np.float64).ravel()
            finite = values[np.isfinite(values)]
            self.assertEqual(stats[name]["nan"], int(np.isnan(values).sum()))
            self.assertEqual(stats[name]["finite"], finite.size)
            self.assertEqual((stats[name]["min"], stats[name]["max"]), (finite.min(), finite.max()))
            self.assertAlmostEqual(stats[name]["mean"], finite.mean(), delta=1e-12 * max(1, abs(finite).max()))
            self.assertAlmostEqual(stats[name]["std"], finite.std(), delta=1e-12 * max(1, finite.std()))

    def test_diff_is_the_same_for_every_jobs(self):
        other = self.path("other")
        shutil.copytree(self.source, other)
        changed = self.arrays["big.a"].copy()
        changed[[10, 4_200_000, 4_999_999]] += np.float32(0.5)  # in the first and last ranges
        np.save(os.path.join(other, "big.a.npy"), changed)
        reports = []
        for jobs in JOBS:
            code, out, err = run(DIFF, self.source, other, "--json", "--jobs", jobs)
            self.assertEqual(code, 1, err)
            reports.append(out)
        self.assertEqual(reports[0], reports[1])
        self.assertEqual(reports[0], reports[2])
        report = {t["name"]: t for t in json.loads(reports[0])["tensors"]}
        self.assertEqual(report["big.a"]["differing"], 3)
        self.assertAlmostEqual(report["big.a"]["max_abs"], 0.5, delta=1e-6)
        self.assertEqual(report["big.b"]["differing"], 0)
        self.assertEqual(sum(not t["equal"] for t in report.values()), 1)

    # ASan's shadow memory and freed-memory quarantine grow RSS with every
    # byte allocated: peak RSS says nothing about the budget there.
    @unittest.skipIf(os.environ.get("CKPT_SANITIZED"), "RSS is not the program's under AddressSanitizer")
    def test_peak_memory_is_bounded_by_the_budget_not_the_checkpoint(self):
        # 24 tensors x 8 MiB = 192 MiB of float32, cast to bf16 on 16 threads
        # under a 16 MiB budget (4 tensors in flight, each with a 4 MiB copy
        # buffer; without the budget all 16 would run: about 70 MiB), against
        # the same conversion of one small tensor (the process's own size:
        # libraries, allocator, threads).
        big = self.path("big")
        os.mkdir(big)
        block = np.arange(2 * MiB, dtype=np.float32)
        for i in range(24):
            np.save(os.path.join(big, f"t{i:02}.npy"), block + i)
        small = self.path("small")
        os.mkdir(small)
        np.save(os.path.join(small, "t.npy"), block[:1000])
        flags = ("--dtype", "bf16", "--jobs", "16", "--memory-budget", "16MiB", "-q")
        code, baseline, err = peak_rss_bytes(CONVERT, small, self.path("small.safetensors"), *flags)
        self.assertEqual(code, 0, err)
        code, peak, err = peak_rss_bytes(CONVERT, big, self.path("big.safetensors"), *flags)
        self.assertEqual(code, 0, err)
        budget, constant = 16 * MiB, 32 * MiB
        checkpoint = 24 * 8 * MiB
        self.assertGreater(checkpoint, 2 * (budget + constant))  # so that the bound below can fail
        self.assertLess(peak - baseline, budget + constant, f"peak {peak / MiB:.1f} MiB, baseline {baseline / MiB:.1f} MiB")
        self.assertGreater(os.path.getsize(self.path("big.safetensors")), 24 * 4 * MiB)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
