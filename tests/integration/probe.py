"""A test tool (a probe) run in the background with its stdin a pipe: the
test sends it command lines and waits, with a deadline, for the lines it
prints."""

import queue
import re
import subprocess
import threading
import time


class LineProbe:
    """<argv> in the background; its stdout lines are collected in lines."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = []
        self._q = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def expect(self, pattern, timeout, where=None):
        """Returns the match of the first new line matching <pattern> (and, if
        given, <where>(match)); raises TimeoutError after <timeout> seconds, or
        AssertionError once the probe has exited."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line matching {pattern!r} in {timeout}s; "
                                   f"got {self.lines[-20:]}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._q.put(None)
                raise AssertionError(f"probe exited ({self.proc.wait()}) before "
                                     f"{pattern!r}: {self.lines[-20:]} "
                                     f"{self.proc.stderr.read()}")
            self.lines.append(line)
            m = rx.search(line)
            if m and (where is None or where(m)):
                return m

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout):
        """Closes the probe's stdin and waits for its exit; returns the exit
        code, with every line collected."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        while not self._q.empty():
            line = self._q.get()
            if line is not None:
                self.lines.append(line)
        return rc
