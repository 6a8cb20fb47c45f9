#!/usr/bin/python3
"""systemd's side of sd_notify, for a Type=notify unit the test starts.

usage: notify_listener.py SOCKET_PATH OUT_FILE

Binds a datagram socket at SOCKET_PATH (what NOTIFY_SOCKET names for the
service) and appends each message it receives to OUT_FILE, one assignment
(e.g. READY=1) per line, so the test can wait for readiness the way systemd
would instead of guessing from side effects.
"""
import os
import socket
import sys


def main():
    path, out_path = sys.argv[1], sys.argv[2]
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    while True:
        message = server.recv(4096)
        with open(out_path, "ab") as out:
            out.write(message.rstrip(b"\n") + b"\n")


if __name__ == "__main__":
    main()
