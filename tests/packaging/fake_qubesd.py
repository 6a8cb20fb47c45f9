#!/usr/bin/python3
"""The one qubesd call the packaging test's policy daemon makes.

usage: fake_qubesd.py SOCKET_PATH SYSTEM_INFO_JSON_FILE

qubesd is not one of our packages, so the test stands in for it: it listens
on SOCKET_PATH (the qubesd socket path inside the test root) and answers
internal.GetSystemInfo with the file's JSON; any other method gets a
QubesException, so an unexpected call (an autostart, a disposable) shows up
as a failed call rather than as a silent success. Protocol: the request is
"METHOD[+ARG] SOURCE TYPE DEST\\0PAYLOAD" up to EOF; the reply "0\\0PAYLOAD" or
"2\\0TYPE\\0TRACEBACK\\0MESSAGE\\0" (lib/admin/protocol.h).
"""
import os
import socket
import sys


def answer(request, system_info):
    method = request.split(b"\0", 1)[0].split(b" ", 1)[0].split(b"+", 1)[0]
    if method == b"internal.GetSystemInfo":
        return b"0\0" + system_info
    print(f"fake_qubesd: refusing {method!r}", file=sys.stderr, flush=True)
    return b"2\0QubesException\0\0not served by the packaging test\0"


def main():
    path, info_path = sys.argv[1], sys.argv[2]
    with open(info_path, "rb") as info_file:
        system_info = info_file.read()
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            request = b""
            try:
                while chunk := conn.recv(65536):
                    request += chunk
                conn.sendall(answer(request, system_info))
            except OSError as error:
                print(f"fake_qubesd: {error}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
