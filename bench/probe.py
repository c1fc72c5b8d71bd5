#!/usr/bin/python3
"""Latency probe for bench/run.sh.

A few SMTP sessions send timed messages while the bulk load runs. For each message the
probe records the time from sending the final "\\r\\n.\\r\\n" to reading the complete
250 reply. smtp-source cannot measure this, hence this small raw-socket client.

    probe.py HOST PORT OUTFILE [--sessions N] [--pause-ms MS] [--size BYTES]
             [--rcpt ADDRESS] [--sender ADDRESS]

Runs until SIGTERM or SIGINT, then writes OUTFILE (JSON):
    {"latencies_ms": [...], "ok": N, "errors": N, "error_samples": [...]}
"""
import argparse
import json
import signal
import socket
import sys
import threading
import time

stop = threading.Event()


class SMTPError(Exception):
    pass


class Session:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """Read one complete (possibly multi-line) reply; return (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise SMTPError("connection closed by server")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                code = int(line[:3]) if line[:3].isdigit() else 0
                return code, b"\n".join(lines).decode("latin-1")

    def cmd(self, line, expect):
        if line is not None:
            self.sock.sendall(line + b"\r\n")
        code, text = self.reply()
        if code // 100 != expect:
            raise SMTPError(text)
        return text

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except Exception:
            pass
        self.sock.close()


def body_of(size, n):
    head = (
        "From: <probe@src.example>\r\n"
        "To: <probe@probe.example>\r\n"
        "Subject: latency probe %d\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "Message-ID: <probe-%d-%f@src.example>\r\n\r\n" % (n, n, time.time())
    ).encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, size // len(line))
    return head + body  # ends with CRLF; the terminator sent apart is ".\r\n"


def worker(idx, args, results, lock):
    sess = None
    n = 0
    while not stop.is_set():
        try:
            if sess is None:
                sess = Session(args.host, args.port, args.timeout)
                sess.cmd(None, 2)  # greeting
                sess.cmd(b"EHLO probe.bench", 2)
            n += 1
            sess.cmd(b"MAIL FROM:<" + args.sender.encode() + b">", 2)
            sess.cmd(b"RCPT TO:<" + args.rcpt.encode() + b">", 2)
            sess.cmd(b"DATA", 3)
            sess.sock.sendall(body_of(args.size, idx * 1000000 + n))
            t0 = time.perf_counter()
            sess.sock.sendall(b".\r\n")  # with the body's last CRLF: "\r\n.\r\n"
            code, text = sess.reply()
            dt = (time.perf_counter() - t0) * 1000.0
            if code // 100 != 2:
                raise SMTPError(text)
            with lock:
                results["latencies_ms"].append(dt)
                results["ok"] += 1
        except Exception as e:  # count, reconnect, go on
            with lock:
                results["errors"] += 1
                if len(results["error_samples"]) < 5:
                    results["error_samples"].append("%s: %s" % (type(e).__name__, e))
            if sess is not None:
                try:
                    sess.sock.close()
                except Exception:
                    pass
                sess = None
            stop.wait(0.2)
            continue
        stop.wait(args.pause_ms / 1000.0)
    if sess is not None:
        sess.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("outfile")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--pause-ms", type=float, default=100.0)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rcpt", default="probe@probe.example")
    ap.add_argument("--sender", default="probe@src.example")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    def on_signal(_sig, _frm):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    results = {"latencies_ms": [], "ok": 0, "errors": 0, "error_samples": []}
    lock = threading.Lock()
    threads = []
    for i in range(args.sessions):
        t = threading.Thread(target=worker, args=(i, args, results, lock), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(args.pause_ms / 1000.0 / args.sessions)  # spread the sessions out
    while not stop.is_set():
        stop.wait(0.5)
    deadline = time.monotonic() + 5.0
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        data = json.dumps(results)
    with open(args.outfile, "w") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
