#!/usr/bin/env python3
"""make-corpus.py — writes the seed corpora under fuzz/corpus/<target>/.

Each seed is a small valid (or nearly valid) input built here from the formats' layouts
(module docs of src/wire, src/kcp, src/mux/frame.rs, src/tunnel, RFC 1928/1929, RFC 9110),
so the fuzzer starts inside each parser instead of at its first length check. Run it again
after a format changes; it rewrites the seed files (files of other names are left alone,
so the lead's targets keep their own seeds).

    python3 fuzz/make-corpus.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


# ---- wire_parse: Ethernet/raw IP frames with IPv4/IPv6 + TCP ----
def tcp(sport, dport, seq, ack, flags, payload, opts=b""):
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 65535, 0, 0) + opts + payload


def ipv4(src, dst, seg):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0, bytes(src), bytes(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    pseudo = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, 6, len(seg))
    seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
    return hdr + seg


def ipv6(src, dst, seg):
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(seg), 6, 64, bytes(src), bytes(dst))
    pseudo = bytes(src) + bytes(dst) + struct.pack("!IxxxB", len(seg), 6)
    seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
    return hdr + seg


def eth(ethertype, body, vlan=None):
    head = bytes.fromhex("020000000002") + bytes.fromhex("020000000001")
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", ethertype) + body


A4, B4 = [198, 18, 0, 1], [198, 18, 0, 2]
A6 = [0x20, 0x01, 0, 2] + [0] * 11 + [1]
B6 = [0x20, 0x01, 0, 2] + [0] * 11 + [2]
ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 2000)
for i, (flags, payload, o) in enumerate([(0x02, b"", b""), (0x12, b"", b""), (0x18, b"hello", ts), (0x10, b"x" * 100, b""), (0x04, b"", b"")]):
    seg = tcp(40000, 9999, 1000 + i, 2000, flags, payload, o)
    write("wire_parse", f"eth-ipv4-{i}", eth(0x0800, ipv4(A4, B4, seg)))
    write("wire_parse", f"eth-ipv6-{i}", eth(0x86DD, ipv6(A6, B6, seg)))
    write("wire_parse", f"raw-ipv4-{i}", ipv4(A4, B4, seg))
write("wire_parse", "eth-vlan-ipv4", eth(0x0800, ipv4(A4, B4, tcp(1, 2, 3, 4, 0x18, b"v")), vlan=7))
write("wire_parse", "raw-ipv6", ipv6(A6, B6, tcp(1, 2, 3, 4, 0x18, b"six")))


# ---- kcp_input: packets of segments, each packet preceded by a u16 LE length ----
def seg(cmd, sn, una, data=b"", conv=7, wnd=128, ts=100):
    return struct.pack("<IBBHIIII", conv, cmd, 0, wnd, ts, sn, una, len(data)) + data


def packets(*ps):
    return b"".join(struct.pack("<H", len(p)) + p for p in ps)


write("kcp_input", "push-in-order", packets(seg(81, 0, 0, b"abc"), seg(81, 1, 0, b"def")))
write("kcp_input", "push-out-of-order", packets(seg(81, 2, 0, b"c"), seg(81, 0, 0, b"a"), seg(81, 1, 0, b"b")))
write("kcp_input", "ack-and-push", packets(seg(82, 0, 1) + seg(81, 0, 0, b"data"), seg(82, 1, 2)))
write("kcp_input", "window-probe", packets(seg(83, 0, 0), seg(84, 0, 0, wnd=0)))
write("kcp_input", "duplicates", packets(*[seg(81, 0, 0, b"same")] * 4))
write("kcp_input", "wrong-conv", packets(seg(81, 0, 0, b"x", conv=8)))
write("kcp_input", "truncated", packets(seg(81, 0, 0, b"abcdef")[:-2]))
write("kcp_input", "big-ts-sn", packets(seg(81, 0xFFFFFFFF, 0xFFFFFFF0, b"wrap", ts=0xFFFFFFFF), seg(82, 0x7FFFFFFF, 5)))


# ---- mux_frames: first byte = chunk size, then frames (version 1) ----
def frame(cmd, sid, payload=b""):
    return struct.pack("!BBHI", 1, cmd, len(payload), sid) + payload


def open_tcp_v4(ip, port):
    return bytes([1, 1, 1]) + bytes(ip) + struct.pack("!H", port)


OPEN = open_tcp_v4([198, 18, 0, 9], 80)
win = struct.pack("!II", 0, 1 << 20)
write("mux_frames", "open-data-fin", bytes([255]) + frame(0, 1, OPEN) + frame(1, 1, b"GET / HTTP/1.1\r\n\r\n") + frame(2, 1))
write("mux_frames", "open-window-rst", bytes([7]) + frame(0, 1, OPEN) + frame(4, 1, win) + frame(3, 1))
write("mux_frames", "ping-pong", bytes([16]) + frame(5, 0, b"\0" * 8) + frame(6, 0, b"\1" * 8))
write("mux_frames", "many-opens", bytes([64]) + b"".join(frame(0, 2 * i + 1, OPEN) + frame(1, 2 * i + 1, b"x" * 100) for i in range(20)))
write("mux_frames", "big-data", bytes([200]) + frame(0, 1, OPEN) + frame(1, 1, b"y" * 60000) + frame(1, 1, b"z" * 10000))
write("mux_frames", "data-unopened", bytes([9]) + frame(1, 5, b"late"))
write("mux_frames", "bad-version", bytes([9]) + b"\x02" + frame(1, 1, b"x")[1:])


# ---- tunnel_headers: open requests, results, datagrams ----
def addr4(ip, port):
    return bytes([1]) + bytes(ip) + struct.pack("!H", port)


def addr6(ip, port):
    return bytes([4]) + bytes(ip) + struct.pack("!H", port)


def addrd(name, port):
    return bytes([3, len(name)]) + name.encode() + struct.pack("!H", port)


write("tunnel_headers", "open-tcp-v4", bytes([1, 1]) + addr4([127, 0, 0, 1], 22))
write("tunnel_headers", "open-tcp-v6", bytes([1, 1]) + addr6(B6, 443))
write("tunnel_headers", "open-tcp-domain", bytes([1, 1]) + addrd("example.test", 80))
write("tunnel_headers", "open-udp-any", bytes([1, 2]) + addr4([0, 0, 0, 0], 0))
for code in range(6):
    write("tunnel_headers", f"result-{code}", bytes([1, code]))
write("tunnel_headers", "datagram-v4", struct.pack("!I", 3) + addr4([198, 18, 0, 53], 53) + b"\x12\x34query")
write("tunnel_headers", "datagram-domain", struct.pack("!I", 5) + addrd("dns.test", 53) + b"payload")
write("tunnel_headers", "datagram-v6-empty", struct.pack("!I", 9) + addr6(A6, 5353))


# ---- socks5_request: greeting / login / request / UDP header byte strings ----
write("socks5_request", "greeting-noauth", bytes([5, 1, 0]))
write("socks5_request", "greeting-both", bytes([5, 2, 0, 2]))
write("socks5_request", "login", bytes([1, 4]) + b"user" + bytes([6]) + b"secret")
write("socks5_request", "connect-v4", bytes([5, 1, 0]) + addr4([198, 18, 0, 2], 80))
write("socks5_request", "connect-v6", bytes([5, 1, 0]) + addr6(B6, 443))
write("socks5_request", "connect-domain", bytes([5, 1, 0]) + addrd("example.test", 443))
write("socks5_request", "connect-ip-literal-domain", bytes([5, 1, 0]) + addrd("127.0.0.1", 22))
write("socks5_request", "udp-associate", bytes([5, 3, 0]) + addr4([0, 0, 0, 0], 0))
write("socks5_request", "bind", bytes([5, 2, 0]) + addr4([1, 2, 3, 4], 5))
write("socks5_request", "udp-header-v4", bytes([0, 0, 0]) + addr4([198, 18, 0, 53], 53) + b"dns")
write("socks5_request", "udp-header-frag", bytes([0, 0, 1]) + addrd("dns.test", 53) + b"x")


# ---- http_connect: request heads ----
write("http_connect", "connect", "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
write("http_connect", "connect-v6-early", "CONNECT [2001:2::1]:443 HTTP/1.1\r\n\r\n\x16\x03\x01early")
write("http_connect", "connect-v4-10", "CONNECT 198.18.0.2:80 HTTP/1.0\r\nUser-Agent: x\r\nProxy-Authorization: Basic eDp5\r\n\r\n")
write("http_connect", "get", "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n")
write("http_connect", "no-port", "CONNECT example.test HTTP/1.1\r\n\r\n")
write("http_connect", "bare-lf", "CONNECT a.test:1 HTTP/1.1\n\n")


# ---- config_yaml: the shipped examples' shapes, small ----
KEY = "0123456789abcdef0123456789abcdef"
write("config_yaml", "server-min", f'role: server\nlisten: {{ addr: ":9999" }}\ntransport:\n  kcp: {{ key: "{KEY}" }}\n')
write("config_yaml", "client-min", f'role: client\nserver: {{ addr: "198.18.0.2:9999" }}\nsocks5:\n  - listen: "127.0.0.1:1080"\ntransport:\n  kcp: {{ key: "{KEY}" }}\n')
write("config_yaml", "client-forwards", f'''role: client
log: {{ level: debug }}
server: {{ addr: "[2001:2::2]:443" }}
forward:
  - {{ listen: "127.0.0.1:9000", target: "127.0.0.1:22", protocol: tcp }}
  - {{ listen: "127.0.0.1:5300", target: "dns.test:53", protocol: udp }}
network:
  interface: eth0
  ipv6: {{ addr: "[2001:2::1]:0", router_mac: "02:00:00:00:00:01" }}
  tcp: {{ local_flag: ["PA", "A"], remote_flag: ["PA"], handshake: false }}
transport:
  conn: 4
  kcp: {{ mode: fast3, mtu: 1200, rcvwnd: 2048, sndwnd: 2048, key: "{KEY}", smuxbuf: 4194304, streambuf: 2097152 }}
  timeouts: {{ keepalive: 5, idle: 60 }}
''')
write("config_yaml", "server-policy-limits", f'''role: server
listen: {{ addr: "198.18.0.2:9999" }}
network:
  ipv4: {{ addr: "198.18.0.2:0", router_mac: "02:00:00:00:00:01" }}
transport:
  kcp: {{ key: "{KEY}", block: aes }}
performance: {{ packet_workers: 2 }}
firewall: {{ auto: false }}
metrics: {{ listen: "127.0.0.1:9464" }}
targets:
  allow: ["127.0.0.1:22", "[::1]:8080-8090", "10.0.0.0/8"]
  deny: ["198.18.0.0/15:25"]
limits:
  streams_per_session: 512
  dials_per_session: 32
  lookups_per_session: 8
  udp_associations_per_session: 16
  sessions_per_address: 4
''')
write("config_yaml", "paqet-legacy", f'role: client\nserver:\n  addr: "198.18.0.2:9999"\ntransport:\n  protocol: kcp\n  kcp:\n    block: salsa20\n    key: "{KEY}"\n')

if __name__ == "__main__":
    for t in sorted(os.listdir(ROOT)):
        print(t, len(os.listdir(os.path.join(ROOT, t))))
