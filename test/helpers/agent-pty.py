#!/usr/bin/env python3
"""Run sp-agent (scripts/qemu/guest/agent.c) on the host against a pseudo-terminal, the way QEMU's
ttyS1 carries it in a guest, and stall reading it as a loaded TCG guest's UART does.

Usage: agent-pty.py AGENT COMMAND READ_BYTES READ_INTERVAL_SECONDS
Sends one EXEC of COMMAND, then reads at most READ_BYTES every READ_INTERVAL_SECONDS until EXIT,
so once the pty's buffer is full each frame the agent writes blocks, as it does behind a slow
UART. Prints one JSON line: the exit code and the stdout bytes the frames carried."""
import base64
import json
import os
import pty
import select
import subprocess
import sys
import time


def main() -> int:
    agent, command = sys.argv[1], sys.argv[2]
    read_bytes, read_interval = int(sys.argv[3]), float(sys.argv[4])
    master, slave = pty.openpty()
    proc = subprocess.Popen([agent, '--port', os.ttyname(slave)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Our slave fd stays open: with none open, reading the master fails with EIO until the agent
    # has opened the port.
    buf = b''
    out = b''
    code = None
    sent = False
    deadline = time.monotonic() + 60
    try:
        while code is None:
            if time.monotonic() > deadline:
                print(json.dumps({'error': 'no EXIT within 60 s', 'stdout_bytes': len(out)}))
                return 1
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            buf += os.read(master, read_bytes if sent else 65536)
            if sent:
                time.sleep(read_interval)
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                words = line.rstrip(b'\r').split(b' ')
                if words[:2] == [b'SP1', b'HELLO'] and not sent:
                    # The agent has set the port raw; only now is a frame read as sent.
                    cmd = base64.b64encode(command.encode()).decode()
                    os.write(master, f'SP1 EXEC 1 {cmd}\n'.encode())
                    sent = True
                elif words[:3] == [b'SP1', b'OUT', b'1']:
                    out += base64.b64decode(words[3])
                elif words[:3] == [b'SP1', b'EXIT', b'1']:
                    code = int(words[3])
        print(json.dumps({'code': code, 'stdout_bytes': len(out), 'stdout_distinct': sorted(set(out.decode('latin1')))}))
        return 0
    finally:
        proc.kill()
        proc.wait()
        os.close(slave)
        os.close(master)


sys.exit(main())
