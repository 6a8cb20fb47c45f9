#!/usr/bin/env python3
"""Writes the seed corpora of lib/proto's fuzz targets (a few valid messages
each, plus near-misses). Run from anywhere; files land beside this script."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def hdr(t, body):
    return struct.pack("<LL", t, len(body)) + body


def field(text, size):
    return text.ljust(size, b"\0")


def v2(service, target, rid):
    return field(service, 64) + field(target, 32) + field(rid, 32)


def v3(target, rid, service):
    return field(target, 64) + field(rid, 32) + service


def v4(source, target, rid, service):
    return field(source, 64) + field(target, 64) + field(rid, 32) + service


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# control_from_agent_fuzz: version byte (0 -> 2, 1 -> 3, 2 -> 4) + frame
agent = {
    "v2_trigger": (0, hdr(0x210, v2(b"qubes.Gpg+x", b"vault", b"SOCKET3"))),
    "v3_trigger": (1, hdr(0x212, v3(b"vm2", b"SOCKET9", b"qubes.Filecopy\0"))),
    "v4_trigger": (2, hdr(0x213, v4(b"", b"@dispvm:tpl", b"SOCKET7", b"foo.Bar+arg\0"))),
    "v4_trigger3": (2, hdr(0x212, v3(b"@default", b"SOCKET1", b"a+b\0"))),
    "v4_bad_id": (2, hdr(0x213, v4(b"src", b"vm", b"SOCK/7", b"x\0"))),
    "v3_no_nul": (1, hdr(0x212, v3(b"vm", b"S", b"svc"))),
    "terminated": (2, hdr(0x211, struct.pack("<LL", 5, 513))),
}
for name, (v, frame) in agent.items():
    write("control_from_agent_fuzz", name, bytes([v]) + frame)

# control_from_daemon_fuzz: frame
daemon = {
    "exec": hdr(0x200, struct.pack("<LL", 0, 514) + b"user:QUBESRPC a+b vm1\0"),
    "just_exec": hdr(0x201, struct.pack("<LL", 3, 515) + b"root:ls -la\0"),
    "connect": hdr(0x202, struct.pack("<LL", 7, 600) + field(b"SOCKET12", 32)),
    "refused": hdr(0x203, field(b"SOCKET4", 32)),
    "exec_no_nul": hdr(0x200, struct.pack("<LL", 0, 514) + b"user:x"),
}
for name, frame in daemon.items():
    write("control_from_daemon_fuzz", name, frame)

# client_socket_fuzz: frame
client = {
    "exec": hdr(0x200, struct.pack("<LL", 0, 0) + b"DEFAULT:QUBESRPC x+ vm\0"),
    "just_exec": hdr(0x201, struct.pack("<LL", 0, 0) + b"user:true\0"),
    "connect": hdr(0x202, struct.pack("<LL", 0, 0) + field(b"SOCKET1", 32)),
    "connect_port": hdr(0x202, struct.pack("<LL", 3, 600) + field(b"SOCKET1", 32)),
    "reply": hdr(0x200, struct.pack("<LL", 42, 514)),
}
for name, frame in client.items():
    write("client_socket_fuzz", name, frame)

# trigger_socket_fuzz: frame
trig = {
    "plain": hdr(0x213, v4(b"", b"vm2", b"SOCKET", b"qubes.Filecopy\0")),
    "keyword": hdr(0x213, v4(b"", b"$dispvm:tpl", b"SOCKET", b"a.B+arg\0")),
    "source": hdr(0x213, v4(b"relay", b"@default", b"SOCKET", b"x+y\0")),
}
for name, frame in trig.items():
    write("trigger_socket_fuzz", name, frame)


# fork_server_request_fuzz: qrexec_cmd_info + command
def cmd(t, dom, port, command):
    return struct.pack("<LLLL", t, dom, port, len(command)) + command


fork = {
    "exec": cmd(0x200, 0, 514, b"QUBESRPC a+b vm1\0"),
    "just_exec": cmd(0x201, 3, 515, b"ls -la\0"),
    "inner_nul": cmd(0x200, 3, 515, b"ls\0-la\0"),
}
for name, data in fork.items():
    write("fork_server_request_fuzz", name, data)

# frame_reader_fuzz: limit byte, step byte, stream
stream = (hdr(0x300, struct.pack("<L", 4)) + hdr(0x190, b"") +
          hdr(0x191, b"hello") + hdr(0x193, struct.pack("<l", 0)))
write("frame_reader_fuzz", "data_stream", bytes([1, 3]) + stream)
write("frame_reader_fuzz", "control_stream",
      bytes([4, 7]) + b"".join(daemon[k] for k in ("exec", "connect", "refused")))
write("frame_reader_fuzz", "oversized", bytes([0, 0]) + hdr(0x191, b"x" * 10))
