"""Kills saves at random moments and races writers against each other and
against readers, in every format: the destination must always be absent, the
previous complete generation, or the new complete one, and a reader reads
the generation it opened to the end."""
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
TRIALS = int(os.environ.get("CKPT_KILL_TRIALS", "200"))  # for oneflow; the other formats share its publishing code
OTHER_TRIALS = int(os.environ.get("CKPT_KILL_TRIALS_OTHER", "40"))
RACE_ROUNDS = int(os.environ.get("CKPT_RACE_ROUNDS", "200"))
MIB = 8
# Every format the library writes, with the name its destination gets.
FORMATS = {"oneflow": "ckpt", "oneflow-pickle": "ckpt", "npy": "ckpt", "npz": "ckpt.npz", "torch": "ckpt.pt",
           "safetensors": "ckpt.safetensors"}


def generation_on_disk(path):
    """The complete generation stored at path, None if absent; fails the test on anything else.

    ckpt's own reader reads it (save_generation --read): every byte must be of
    the generation its "generation" scalar names."""
    if not os.path.lexists(path):
        return None
    read = subprocess.run([SAVE, "--read", path], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    return int(read.stdout)


def leftovers(directory):
    return [n for n in os.listdir(directory) if ".ckpt-tmp-" in n]


class KillAndRace(unittest.TestCase):
    def test_sigkill_at_random_points(self):
        for fmt, name in FORMATS.items():
            with self.subTest(format=fmt):
                trials = TRIALS if fmt == "oneflow" else OTHER_TRIALS
                began = time.monotonic()
                outcomes = self.kill_saves(fmt, name, trials)
                print(f"{fmt}: {trials} kills in {time.monotonic() - began:.1f} s: {outcomes}")
                self.assertEqual(outcomes["absent"] + outcomes["previous"] + outcomes["new"], trials)

    def kill_saves(self, fmt, name, trials):
        rng = random.Random(20261129)
        outcomes = {"absent": 0, "previous": 0, "new": 0}
        with tempfile.TemporaryDirectory() as tmp:
            dest = os.path.join(tmp, name)
            save = [SAVE, dest, "0", str(MIB), "--format", fmt]
            # Time one uninterrupted save to spread the kills over its length.
            began = time.monotonic()
            subprocess.run(save, check=True)
            duration = time.monotonic() - began
            self.assertEqual(generation_on_disk(dest), 0)
            current = 0
            for trial in range(1, trials + 1):
                if trial % 10 == 0:  # also kill saves to a fresh destination
                    subprocess.run(["rm", "-rf", dest], check=True)
                    current = None
                save[2] = str(trial)
                proc = subprocess.Popen(save + ["--overwrite"])
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
                for left_name in left:
                    subprocess.run(["rm", "-rf", os.path.join(tmp, left_name)], check=True)
        return outcomes

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

    def test_readers_during_replacing_saves_read_their_generation_to_the_end(self):
        """ckpt's reader, reading slowly while saves replace the checkpoint
        (RACE_ROUNDS of them per format), reads the generation it opened to the
        end: never an error, never a mix, never an absent checkpoint."""
        for fmt, name in FORMATS.items():
            with self.subTest(format=fmt), tempfile.TemporaryDirectory() as tmp:
                dest = os.path.join(tmp, name)
                subprocess.run([SAVE, dest, "0", "2", "--format", fmt], check=True)
                began = time.monotonic()
                writer = subprocess.Popen(
                    ["sh", "-c", f'for g in $(seq 1 {RACE_ROUNDS}); do '
                                 f'"{SAVE}" "{dest}" $g 2 --overwrite --format {fmt} || exit 1; done'])
                seen = []
                try:
                    while writer.poll() is None:
                        seen.append(generation_on_disk(dest))
                finally:  # a failed read must not leave the writer racing the cleanup
                    if writer.poll() is None:
                        writer.kill()
                        writer.wait()
                self.assertEqual(writer.returncode, 0)
                self.assertEqual(seen, sorted(seen))  # each read sees the newest or a later generation
                self.assertEqual(generation_on_disk(dest), RACE_ROUNDS)
                self.assertEqual(leftovers(tmp), [])
                print(f"{fmt}: {RACE_ROUNDS} replacing saves, {len(seen)} reads, "
                      f"{len(set(seen))} generations seen, {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
