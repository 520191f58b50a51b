"""nat.py's rendering: the rules computed from a desired state (no kernel needed)."""

import pytest

from dockyard.network.nat import BridgeState, Nat, NatState, PortMapping


def state(**kw):
    return NatState(
        [BridgeState("br-a", ("10.1.0.0/24", "fd00:1::/64")),
         BridgeState("br-b", ("10.2.0.0/24",), internal=True),
         BridgeState("br-c", ("10.3.0.0/24",), icc=False, masquerade=False)],
        [PortMapping("br-a", "10.1.0.2", 80, "tcp", "", 8080),
         PortMapping("br-a", "10.1.0.2", 53, "udp", "127.0.0.1", 5353),
         PortMapping("br-a", "fd00:1::2", 80, "tcp", "", 8080),
         PortMapping("br-b", "10.2.0.2", 80, "tcp", "", 9090)], **kw)


def test_prefix_validation():
    for bad in ("", "A" * 17, "BAD PREFIX", "x;y"):
        with pytest.raises(ValueError):
            Nat(prefix=bad)
    assert Nat(prefix="DYT-1").chains["filter"][0] == "DYT-1-FORWARD"


def test_render_ipv4():
    rules = Nat("DY").render(state(), 4)
    nat, flt = rules["nat"], rules["filter"]
    assert "-A DY -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80" in nat
    assert ("-A DY -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination "
            "10.1.0.2:53") in nat
    assert not any("9090" in r for r in nat + flt)  # internal networks publish nothing
    assert "-A DY-POSTROUTING -s 10.1.0.0/24 ! -o br-a -j MASQUERADE" in nat
    assert not any("10.2.0.0/24" in r or "10.3.0.0/24" in r for r in nat)  # internal, no masq
    assert "-A DY-POSTROUTING -s 127.0.0.0/8 -o br-a -j MASQUERADE" in nat
    assert ("-A DY-FORWARD -d 10.1.0.2/32 -o br-a -p tcp -m tcp --dport 80 -m conntrack "
            "--ctstate DNAT -j ACCEPT") in flt
    assert flt[0] == "-A DY-FORWARD -j DY-ISOLATION-1"
    assert "-A DY-FORWARD -i br-b ! -o br-b -j DROP" in flt
    assert "-A DY-FORWARD -o br-b ! -i br-b -j DROP" in flt
    assert "-A DY-FORWARD -i br-c -o br-c -j DROP" in flt  # icc off
    assert "-A DY-FORWARD -i br-a -o br-a -j ACCEPT" in flt
    for b in ("br-a", "br-b", "br-c"):
        assert f"-A DY-ISOLATION-1 -i {b} ! -o {b} -j DY-ISOLATION-2" in flt
        assert f"-A DY-ISOLATION-2 -o {b} -j DROP" in flt
        # the final drop of each bridge comes after its accepts
        assert flt.index(f"-A DY-FORWARD -o {b} -j DROP") > flt.index(
            f"-A DY-FORWARD -i {b} -o {b} -j {'DROP' if b == 'br-c' else 'ACCEPT'}")


def test_render_ipv6_only_ipv6_parts():
    rules = Nat("DY").render(state(), 6)
    nat, flt = rules["nat"], rules["filter"]
    assert "-A DY ! -d ::1/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination " \
           "[fd00:1::2]:80" in nat
    assert "-A DY-POSTROUTING -s fd00:1::/64 ! -o br-a -j MASQUERADE" in nat
    assert not any("127.0.0.0/8" in r or "10.1.0.2" in r for r in nat + flt)
    assert not any("br-b" in r or "br-c" in r for r in flt)  # no IPv6 subnet there


def test_restore_input_hooks():
    n = Nat("DY")
    text = n.restore_input(state(), 4, existing="")
    assert text.startswith("*nat\n:DY - [0:0]\n:DY-POSTROUTING - [0:0]\n")
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j DY\n" in text
    assert "-A OUTPUT -m addrtype --dst-type LOCAL -j DY\n" in text
    assert "-I FORWARD -j DY-FORWARD\n" in text
    assert text.count("COMMIT") == 2
    saved = "\n".join(h for hs in n.hooks(4).values() for h in hs)
    again = n.restore_input(state(), 4, existing=saved)
    assert "PREROUTING" not in again and "-I FORWARD" not in again
    assert n.restore_input(state(), 4, existing=None) == again
    removal = n.restore_input(None, 4, existing=saved + "\n" + saved)
    assert removal.count("-D PREROUTING -m addrtype --dst-type LOCAL -j DY\n") == 2
    assert "-X DY\n" in removal and "-X DY-ISOLATION-2\n" in removal
    assert "-A DY" not in removal


def test_host_ip_family_must_match():
    st = NatState([BridgeState("br-a", ("10.1.0.0/24",))],
                  [PortMapping("br-a", "10.1.0.2", 80, "tcp", "::", 7000),
                   PortMapping("br-a", "10.1.0.2", 81, "tcp", "0.0.0.0", 7001)])
    nat = Nat("DY").render(st, 4)["nat"]
    assert not any("7000" in r for r in nat)
    assert "-A DY -p tcp -m tcp --dport 7001 -j DNAT --to-destination 10.1.0.2:81" in nat


def _apply_ops(chains: dict[str, list[str]], lines: list[str]) -> None:
    """What iptables-restore does with -D/-I lines, on {chain: [spec, ...]}."""
    for line in lines:
        if line.startswith(("*", "COMMIT")):
            continue
        op, chain, rest = line.split(" ", 2)
        if op == "-D":
            chains[chain].remove(rest)
        else:
            pos, spec = rest.split(" ", 1)
            chains.setdefault(chain, []).insert(int(pos) - 1, spec)


def _chains(rules: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table in ("nat", "filter"):
        for r in rules[table]:
            _, chain, spec = r.split(" ", 2)
            out.setdefault(chain, []).append(spec)
    return out


def _ports(*specs):
    return [PortMapping(b, ip, cp, "tcp", "", hp) for b, ip, cp, hp in specs]


@pytest.mark.parametrize("before,after", [
    ([], [("br-a", "10.1.0.2", 80, 8080)]),  # publish
    ([("br-a", "10.1.0.2", 80, 8080)], []),  # unpublish
    ([("br-a", "10.1.0.2", 80, 8080)],
     [("br-a", "10.1.0.2", 80, 8080), ("br-c", "10.3.0.5", 22, 2222)]),  # another bridge
    ([("br-a", "10.1.0.2", 80, 8080), ("br-c", "10.3.0.5", 22, 2222)],
     [("br-c", "10.3.0.5", 22, 2222), ("br-a", "10.1.0.9", 443, 8443)]),
])
def test_incremental_reaches_the_full_render(before, after):
    from dockyard.network.nat import incremental

    nat = Nat("DY")
    bridges = [BridgeState("br-a", ("10.1.0.0/24",)), BridgeState("br-c", ("10.3.0.0/24",))]
    old = nat.render(NatState(bridges, _ports(*before)), 4)
    new = nat.render(NatState(bridges, _ports(*after)), 4)
    ops = incremental(old, new)
    assert ops is not None and ops  # something changed, and in place
    chains = _chains(old)
    _apply_ops(chains, ops)
    assert {c: r for c, r in chains.items() if r} == _chains(new)
    assert incremental(new, new) == []  # nothing to commit


def test_incremental_refuses_a_reorder():
    from dockyard.network.nat import incremental

    a = {"nat": ["-A DY -p tcp -j ACCEPT", "-A DY -p udp -j ACCEPT"], "filter": []}
    b = {"nat": ["-A DY -p udp -j ACCEPT", "-A DY -p tcp -j ACCEPT"], "filter": []}
    assert incremental(a, b) is None
