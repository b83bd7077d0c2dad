"""Kills saves at random moments and races writers against each other and
against a reader: the destination must always be absent, the previous
complete generation, or the new complete one."""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SAVE, VALIDATE = sys.argv[1], sys.argv[2]
TRIALS = int(os.environ.get("CKPT_KILL_TRIALS", "200"))
MIB = 8


def expected(generation, variable, size):
    start = (generation * 31 + variable * 7) % 251
    pattern = bytes((start + i) % 251 for i in range(251))
    return (pattern * (size // 251 + 1))[:size]


def generation_on_disk(path):
    """The complete generation stored at path, None if absent; fails the test on anything else.

    Everything is read through one open directory, as ckpt's reader does, so a
    snapshot swapped at `path` meanwhile cannot mix two generations."""
    if not os.path.lexists(path):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        def read(relative):
            with open(os.open(relative, os.O_RDONLY, dir_fd=fd), "rb") as f:
                return f.read()

        pinned = f"/proc/{os.getpid()}/fd/{fd}"
        report = json.loads(subprocess.run([VALIDATE, pinned, "--json"], capture_output=True, text=True).stdout)
        if not report["valid"] and not os.path.exists(pinned + "/generation"):
            raise FileNotFoundError(path)  # the old snapshot was deleted under us after a swap
        assert report["valid"], report["issues"]
        generation = int.from_bytes(read("generation/out"), "little", signed=True)
        for v in range(4):
            data = read(f"var{v}/out")
            assert data == expected(generation, v, len(data)), f"var{v} of generation {generation} has wrong bytes"
        return generation
    finally:
        os.close(fd)


def leftovers(directory):
    return [n for n in os.listdir(directory) if ".ckpt-tmp-" in n]


class KillAndRace(unittest.TestCase):
    def test_sigkill_at_random_points(self):
        rng = random.Random(20261129)
        outcomes = {"absent": 0, "previous": 0, "new": 0}
        with tempfile.TemporaryDirectory() as tmp:
            dest = os.path.join(tmp, "ckpt")
            # Time one uninterrupted save to spread the kills over its length.
            began = time.monotonic()
            subprocess.run([SAVE, dest, "0", str(MIB)], check=True)
            duration = time.monotonic() - began
            self.assertEqual(generation_on_disk(dest), 0)
            current = 0
            for trial in range(1, TRIALS + 1):
                if trial % 10 == 0:  # also kill saves to a fresh destination
                    subprocess.run(["rm", "-rf", dest], check=True)
                    current = None
                proc = subprocess.Popen([SAVE, dest, str(trial), str(MIB), "--overwrite"])
                time.sleep(rng.uniform(0, duration * 1.2))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                found = generation_on_disk(dest)
                self.assertIn(found, (current, trial), f"trial {trial}: found generation {found}")
                outcomes["absent" if found is None else "new" if found == trial else "previous"] += 1
                current = found
                left = leftovers(tmp)  # what a killed save leaves: a hidden staging sibling
                if left:
                    outcomes["leftover reported"] = outcomes.get("leftover reported", 0) + 1
                    report = json.loads(subprocess.run([VALIDATE, dest, "--json"], capture_output=True,
                                                       text=True).stdout)
                    reported = [i for i in report["issues"] if i["code"] == "E209" and left[0] in i["message"]]
                    self.assertTrue(reported, report["issues"])
                for name in left:
                    subprocess.run(["rm", "-rf", os.path.join(tmp, name)], check=True)
        print(f"{TRIALS} kills: {outcomes}")
        self.assertEqual(outcomes["absent"] + outcomes["previous"] + outcomes["new"], TRIALS)

    def test_two_writers_one_wins(self):
        for round_ in range(10):
            with tempfile.TemporaryDirectory() as tmp:
                dest = os.path.join(tmp, "ckpt")
                procs = [subprocess.Popen([SAVE, dest, str(g), "2"], stderr=subprocess.PIPE, text=True) for g in (1, 2)]
                results = [(p.wait(), p.communicate()[1]) for p in procs]
                codes = sorted(code for code, _ in results)
                self.assertEqual(codes, [0, 3], results)
                loser = next(err for code, err in results if code == 3)
                self.assertIn("E103 destination_exists", loser)
                winner = next(g for g, (code, _) in zip((1, 2), results) if code == 0)
                self.assertEqual(generation_on_disk(dest), winner)
                self.assertEqual(leftovers(tmp), [])

    def test_reader_during_writes_sees_only_complete_snapshots(self):
        with tempfile.TemporaryDirectory() as tmp:
            dest = os.path.join(tmp, "ckpt")
            subprocess.run([SAVE, dest, "0", "2"], check=True)
            writer = subprocess.Popen(
                ["sh", "-c", f'for g in $(seq 1 15); do "{SAVE}" "{dest}" $g 2 --overwrite || exit 1; done'])
            seen = set()
            while writer.poll() is None:
                try:
                    seen.add(generation_on_disk(dest))
                except FileNotFoundError:
                    pass  # replaced between listing and reading: the next look sees the new one
            self.assertEqual(writer.returncode, 0)
            self.assertNotIn(None, seen)  # an exchange never shows an absent destination
            self.assertEqual(generation_on_disk(dest), 15)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
