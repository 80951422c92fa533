"""mfa-balancer's RADIUS UDP front, relaying between a test NAS and three
stand-in nodes: the real balancer and HAProxy started through
appliance/cluster.py (no PostgreSQL, no mfa-node), and for each member a
Python peer on its node port (HTTP /ready and /status, so HAProxy and the
members poll see it ready) and on its node_radius port (UDP, the PROXY v2
side). The tests read exactly what a node receives and decide exactly what
it answers.

Checked: the PROXY v2 header a node gets (the NAS's address and port, the
front's address), the answer relayed to the NAS from the front address with
the header stripped, a retransmission reaching the node of the first copy,
State "<node>-..." reaching that node, drain and maint, malformed
datagrams and answers dropped without harm, and a node whose RADIUS port is
closed (ICMP port unreachable) held down and its retransmissions re-routed.
The tests run in order on one balancer."""

import base64
import http.server
import json
import os
import secrets
import select
import shutil
import socket
import struct
import sys
import tempfile
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import Cluster, wait_for  # noqa: E402

PROXY_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
ACCESS_REQUEST, ACCESS_ACCEPT, ACCOUNTING_REQUEST, STATUS_SERVER = 1, 2, 4, 12
USER_NAME, REPLY_MESSAGE, STATE = 1, 18, 24
WAIT = 5  # seconds any one datagram may take


def radius(code, ident, auth=None, attrs=()):
    """A RADIUS packet (RFC 2865 §3); the balancer checks no authenticator."""
    body = b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    auth = auth if auth is not None else secrets.token_bytes(16)
    return struct.pack("!BBH", code, ident, 20 + len(body)) + auth + body


def request(ident, user=b"alice", state=None, code=ACCESS_REQUEST):
    attrs = [(USER_NAME, user)] + ([(STATE, state)] if state is not None else [])
    return radius(code, ident, attrs=attrs)


def challenge_id(node):
    return (node + "-" + base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()
            .rstrip("=")).encode()


def proxy_header(src, dst):
    """PROXY v2, command PROXY, over DGRAM (proxy-protocol.txt §2.2): AF_INET or AF_INET6."""
    af, fam, alen = ((socket.AF_INET6, 0x22, 16) if ":" in src[0] else (socket.AF_INET, 0x12, 4))
    return (PROXY_SIG + bytes([0x21, fam]) + struct.pack("!H", 2 * alen + 4)
            + socket.inet_pton(af, src[0]) + socket.inet_pton(af, dst[0])
            + struct.pack("!HH", src[1], dst[1]))


def parse_proxy(data):
    """(version/command, family/transport, src, dst, payload) of a PROXY v2 datagram."""
    assert data[:12] == PROXY_SIG, data[:16]
    length = struct.unpack("!H", data[14:16])[0]
    assert data[13] in (0x12, 0x22), data[:16]
    af, alen = (socket.AF_INET6, 16) if data[13] == 0x22 else (socket.AF_INET, 4)
    assert length >= 2 * alen + 4, data[:16]
    a = 16 + 2 * alen
    src = (socket.inet_ntop(af, data[16:16 + alen]), struct.unpack("!H", data[a:a + 2])[0])
    dst = (socket.inet_ntop(af, data[16 + alen:a]), struct.unpack("!H", data[a + 2:a + 4])[0])
    return data[12], data[13], src, dst, data[16 + length:]


def ipv6_works():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class StandInNode:
    """A member's node as the balancer sees it: HTTP for the health checks, UDP for RADIUS."""

    def __init__(self, member):
        self.id = member.id
        self.port = member.ports["node_radius"]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                doc = ({"local_db": True, "node_id": member.id, "challenges": 0, "sessions": 0,
                        "version": "stand-in"} if self.path == "/status" else {"status": "ready"})
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", member.ports["node"]), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.open()

    def open(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))

    def close_udp(self):
        self.udp.close()
        self.udp = None

    def close(self):
        self.http.shutdown()
        self.http.server_close()
        if self.udp:
            self.close_udp()


class Setup:
    def __init__(self, cluster, nodes, any_address):
        self.cluster = cluster
        self.nodes = nodes
        self.lb = cluster.by_id["n1"]
        self.front = ("127.0.0.1", self.lb.ports["radius"])
        # n2's balancer takes any address ("::" or "0.0.0.0"): a floating address.
        self.any_lb = cluster.by_id["n2"]
        self.any_address = any_address

    def status(self, lb=None):
        st, doc = (lb or self.lb).balancer_api()
        assert st == 200, doc
        return doc["radius"]

    def modes(self, lb=None):
        return {n["id"]: n["mode"] for n in self.status(lb)["nodes"]}

    def wait_mode(self, node, mode):
        wait_for(lambda: self.modes()[node] == mode, 15, f"RADIUS mode of {node} is {mode}")

    def nas(self, address="127.0.0.1"):
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, 0))
        s.settimeout(WAIT)
        return s

    def receive(self, timeout=WAIT):
        """The next datagram any stand-in node gets: (node id, data, balancer's address)."""
        socks = {n.udp: n for n in self.nodes.values() if n.udp}
        ready, _, _ = select.select(list(socks), [], [], timeout)
        assert ready, "no node received the datagram"
        data, addr = ready[0].recvfrom(65536)
        return socks[ready[0]].id, data, addr

    def assert_nothing_queued(self):
        socks = [n.udp for n in self.nodes.values() if n.udp]
        ready, _, _ = select.select(socks, [], [], 0)
        assert not ready, "a node got a datagram it should not have"

    def answer(self, node, addr, nas, front, payload):
        """Node <node> answers <nas>, which asked <front>, through the balancer at <addr>."""
        self.nodes[node].udp.sendto(proxy_header(front, nas) + payload, addr)

    def round_trip(self, nas, pkt, want_node=None, front=None):
        """Sends <pkt> from socket <nas> to <front>, has the node answer; returns the node's id."""
        front = front or self.front
        nas.sendto(pkt, front)
        node, data, addr = self.receive()
        if want_node:
            assert node == want_node, (node, want_node)
        _, _, src, dst, payload = parse_proxy(data)
        assert src == nas.getsockname()[:2] and dst == front
        assert payload == pkt
        reply = radius(ACCESS_ACCEPT, pkt[1])
        self.answer(node, addr, src, dst, reply)
        data, frm = nas.recvfrom(65536)
        assert (data, frm[:2]) == (reply, front), "the answer comes from the address asked"
        return node


@pytest.fixture(scope="module")
def rad():
    build = os.environ.get("MFA_BUILD_DIR")
    if not build:
        pytest.fail("MFA_BUILD_DIR is not set; run through ctest (./tests/run)")
    base = tempfile.mkdtemp(prefix="mfa-rad-", dir="/tmp")
    c = Cluster(base, build, members=3, balancers=["n1", "n2"], with_nodes=False)
    c.create()
    any_address = "::" if ipv6_works() else "0.0.0.0"
    with open(c.by_id["n2"].conf) as f:
        text = f.read()
    assert "  check_inter_ms = 500;\n" in text
    with open(c.by_id["n2"].conf, "w") as f:
        f.write(text.replace("  check_inter_ms = 500;\n", "  check_inter_ms = 500;\n"
                             f'  radius = {{ address = "{any_address}"; }};\n'))
    nodes = {}
    try:
        for m in c.members:
            nodes[m.id] = StandInNode(m)
        for lb in ("n1", "n2"):
            c.by_id[lb].start_balancer()
        s = Setup(c, nodes, any_address)
        # HAProxy's checks and the members poll both have to see the stand-ins.
        for lb in (s.lb, s.any_lb):
            wait_for(lambda lb=lb: set(s.modes(lb).values()) == {"ready"}, 30,
                     f"every node ready for RADIUS on {lb.id}")
        yield s
    finally:
        c.stop()
        for n in nodes.values():
            n.close()
        if not os.environ.get("MFA_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def test_relay_carries_the_nas_address_both_ways(rad):
    nas = rad.nas()
    pkt = request(1)
    nas.sendto(pkt, rad.front)
    node, data, addr = rad.receive()
    cmd, fam, src, dst, payload = parse_proxy(data)
    assert cmd == 0x21, "version 2, command PROXY"
    assert fam == 0x12, "AF_INET over DGRAM"
    assert src == nas.getsockname()
    assert dst == rad.front
    assert payload == pkt
    # The answer goes back from the front's address, header stripped.
    reply = radius(ACCESS_ACCEPT, 1, attrs=[(REPLY_MESSAGE, b"welcome")])
    rad.answer(node, addr, src, dst, reply)
    data, frm = nas.recvfrom(65536)
    assert data == reply
    assert frm == rad.front
    # Status-Server (RFC 5997) is forwarded too.
    rad.round_trip(nas, radius(STATUS_SERVER, 2))
    st = rad.status()
    assert st["answers"] >= 2 and st["forwarded"] >= 2


def test_retransmission_reaches_the_same_node(rad):
    nas = rad.nas()
    sent = {}
    for ident in range(10, 19):
        pkt = request(ident)
        nas.sendto(pkt, rad.front)
        node, data, _ = rad.receive()
        sent[ident] = (pkt, node)
    assert len({node for _, node in sent.values()}) == 3, "new requests spread over the nodes"
    before = rad.status()["retransmissions"]
    for _ in range(2):
        for ident, (pkt, node) in sent.items():
            nas.sendto(pkt, rad.front)
            got, data, _ = rad.receive()
            assert got == node, f"retransmission of id {ident} went to {got}, not {node}"
            assert parse_proxy(data)[4] == pkt
    assert rad.status()["retransmissions"] - before == 18
    # Same id, new authenticator: a new request, no longer bound to that node.
    rad.round_trip(nas, request(10))


def test_state_reaches_its_node(rad):
    nas = rad.nas()
    before = rad.status()["state_routed"]
    for node in ("n2", "n3", "n1", "n3"):
        for ident in range(3):
            rad.round_trip(nas, request(30 + ident, state=challenge_id(node)), want_node=node)
    assert rad.status()["state_routed"] - before == 12


def test_malformed_datagrams_are_dropped_and_the_front_carries_on(rad):
    nas = rad.nas()
    before = rad.status()["drops"]
    good = request(40)
    bad = [
        b"\x01\x02\x00",                                      # shorter than 20
        good[:2] + struct.pack("!H", len(good) + 1) + good[4:],  # Length past the datagram
        good[:2] + struct.pack("!H", 19) + good[4:],          # Length below 20
        good[:20] + bytes([USER_NAME, 40]) + b"abc",          # attribute past the end
        good[:20] + bytes([USER_NAME, 1]) + b"abc",           # attribute shorter than 2
    ]
    fixed = [bytearray(p) for p in bad[3:]]
    for p in fixed:
        p[2:4] = struct.pack("!H", len(p))
    bad = bad[:3] + [bytes(p) for p in fixed]
    for pkt in bad:
        nas.sendto(pkt, rad.front)
    nas.sendto(request(41) + b"\0" * 5000, rad.front)          # over 4096 bytes
    nas.sendto(radius(ACCOUNTING_REQUEST, 42), rad.front)      # not served here
    nas.sendto(radius(ACCESS_ACCEPT, 43), rad.front)           # an answer is no request
    # Sent after the bad ones on the same path: once it arrives, none of them did.
    rad.round_trip(nas, good)
    rad.assert_nothing_queued()
    after = rad.status()
    assert after["drops"]["malformed"] - before["malformed"] == len(bad)
    assert after["drops"]["too_big"] - before["too_big"] == 1
    assert after["drops"]["not_request"] - before["not_request"] == 2
    assert after["malformed"], "reasons are counted"


def test_malformed_answers_are_dropped(rad):
    nas = rad.nas()
    before = rad.status()["drops"]
    pkt = request(50)
    nas.sendto(pkt, rad.front)
    node, data, addr = rad.receive()
    src = parse_proxy(data)[2]
    reply = radius(ACCESS_ACCEPT, 50)
    rad.nodes[node].udp.sendto(reply, addr)                                # no header
    rad.nodes[node].udp.sendto(PROXY_SIG + b"\x21\x12\x00\x40" + reply, addr)  # bad length
    rad.nodes[node].udp.sendto(proxy_header(rad.front, src) + reply[:10], addr)
    rad.nodes[node].udp.sendto(proxy_header(rad.front, src) + request(50), addr)
    rad.answer(node, addr, src, rad.front, reply)
    data, frm = nas.recvfrom(65536)
    assert (data, frm) == (reply, rad.front), "only the good answer reaches the NAS"
    after = rad.status()["drops"]
    assert after["answer_bad_proxy"] - before["answer_bad_proxy"] == 2
    assert after["answer_malformed"] - before["answer_malformed"] == 1
    assert after["answer_not_response"] - before["answer_not_response"] == 1


def test_drain_and_maint(rad):
    nas = rad.nas()
    st, doc = rad.lb.balancer_api("POST", "/servers/n2", {"state": "drain"})
    assert st == 200, doc
    rad.wait_mode("n2", "drain")
    for ident in range(60, 66):
        assert rad.round_trip(nas, request(ident)) != "n2", "a drained node takes no new request"
    rad.round_trip(nas, request(66, state=challenge_id("n2")), want_node="n2")

    st, doc = rad.lb.balancer_api("POST", "/servers/n2", {"state": "maint"})
    assert st == 200, doc
    rad.wait_mode("n2", "maint")
    before = rad.status()["rerouted"]
    node = rad.round_trip(nas, request(67, state=challenge_id("n2")))
    assert node != "n2", "a node in maintenance gets nothing; another says start again"
    assert rad.status()["rerouted"] - before == 1

    st, doc = rad.lb.balancer_api("POST", "/servers/n2", {"state": "ready"})
    assert st == 200, doc
    rad.wait_mode("n2", "ready")
    rad.round_trip(nas, request(68, state=challenge_id("n2")), want_node="n2")


def test_closed_node_port_is_held_down_and_rerouted(rad):
    nas = rad.nas()
    victim = rad.nodes["n3"]
    before = rad.status()
    victim.close_udp()
    pkt = request(70, state=challenge_id("n3"))
    nas.sendto(pkt, rad.front)  # reaches no one: ICMP port unreachable
    wait_for(lambda: rad.modes()["n3"] == "unreachable", WAIT, "n3 held down")
    # The NAS retransmits: it goes to a live node, which will say "start again".
    # (Should the hold-down end before a copy lands, that copy is refused
    # again and the next one moves: a NAS keeps retransmitting too.)
    for _ in range(5):
        nas.sendto(pkt, rad.front)
        socks = [n.udp for n in rad.nodes.values() if n.udp]
        if select.select(socks, [], [], 1)[0]:
            break
    node, data, addr = rad.receive()
    assert node != "n3"
    assert parse_proxy(data)[4] == pkt
    after = rad.status()
    assert after["unreachable"] > before["unreachable"]
    assert after["rerouted"] > before["rerouted"]
    n3 = next(n for n in after["nodes"] if n["id"] == "n3")
    assert n3["unreachable"] >= 1
    # Back after the hold-down, its port open again.
    victim.open()
    rad.wait_mode("n3", "ready")
    rad.round_trip(nas, request(71, state=challenge_id("n3")), want_node="n3")


def test_any_address_answers_from_the_address_asked(rad):
    """A front on "::" or "0.0.0.0" (a floating address): the node learns the
    address the NAS sent to, and the answer leaves from it (IP_PKTINFO)."""
    port = rad.any_lb.ports["radius"]
    cases = [("127.0.0.1", ("127.0.0.2", port)), ("127.0.0.1", ("127.0.0.1", port))]
    if rad.any_address == "::":
        cases.append(("::1", ("::1", port)))  # and IPv6 NASes alike
    for nas_address, front in cases:
        nas = rad.nas(nas_address)
        for ident in range(3):
            rad.round_trip(nas, request(80 + ident), front=front)
        # Routing is the same on every balancer: nothing to share between them.
        rad.round_trip(nas, request(84, state=challenge_id("n3")), want_node="n3", front=front)
    st = rad.status(rad.any_lb)
    assert st["address"] == rad.any_address
    assert st["answers"] == st["forwarded"] == 4 * len(cases)


def test_counters_on_the_health_page(rad):
    st, doc = rad.lb.health()
    assert st == 200
    counters = doc["radius"]
    assert counters["received"] > 0 and counters["forwarded"] > 0 and counters["answers"] > 0
    assert counters["dropped"] > 0 and counters["state_routed"] > 0
    assert all(isinstance(v, int) for v in counters.values()), "counters only"
    log = rad.lb.log("balancer")
    assert "radius.listening" in log and "radius.node id=n3 mode=unreachable" in log
