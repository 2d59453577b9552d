#!/bin/sh
# Capture the VRRPv2 frames Keepalived sends in its default protocol (no vrrp_version line) into
# keepalived-2.2.7-v2.pcap and keepalived-2.2.7-v2.json, next to this script.
#
# Everything runs in two network namespaces this script creates and removes, joined by a veth pair: v0 in
# the first (Keepalived, 192.0.2.10), v1 in the second (tcpdump, 192.0.2.11). Three instances, all MASTER: VRID 81 without authentication
# (multicast), VRID 82 with auth_type PASS / auth_pass 42 (multicast), VRID 83 unicast to 192.0.2.11 with a
# 12-byte auth_pass (Keepalived keeps the first 8 bytes). After a few advertisements Keepalived is stopped
# with SIGTERM, so the priority-0 frames are captured too. Needs root, keepalived, tcpdump, tshark, python3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ns=vipdcap$$
peer=vipdcapp$$
tmp=$(mktemp -d)
cleanup() {
    [ -n "${ka:-}" ] && kill "$ka" 2>/dev/null || true
    [ -n "${td:-}" ] && kill "$td" 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "$peer" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
ip netns add "$ns"
ip netns add "$peer"
ip -n "$ns" link set lo up
ip -n "$ns" link add v0 type veth peer name v1 netns "$peer"
ip -n "$ns" addr add 192.0.2.10/24 dev v0
ip -n "$peer" addr add 192.0.2.11/24 dev v1
ip -n "$ns" link set v0 up
ip -n "$peer" link set v1 up
cat >"$tmp/keepalived.conf" <<CONF
global_defs {
    router_id capture
    enable_script_security
}
vrrp_instance NOAUTH {
    state MASTER
    interface v0
    virtual_router_id 81
    priority 101
    advert_int 1
    virtual_ipaddress {
        192.0.2.181/32 dev v0
    }
}
vrrp_instance PASS {
    state MASTER
    interface v0
    virtual_router_id 82
    priority 101
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 42
    }
    virtual_ipaddress {
        192.0.2.182/32 dev v0
    }
}
vrrp_instance UNICAST {
    state MASTER
    interface v0
    virtual_router_id 83
    priority 150
    advert_int 1
    unicast_src_ip 192.0.2.10
    unicast_peer {
        192.0.2.11
    }
    authentication {
        auth_type PASS
        auth_pass longpassword
    }
    virtual_ipaddress {
        192.0.2.183/32 dev v0
    }
}
CONF
ip netns exec "$peer" tcpdump -i v1 -U -w "$tmp/v2.pcap" 'ip proto 112' 2>"$tmp/tcpdump.log" &
td=$!
sleep 1
ip netns exec "$ns" keepalived -n -l -D -P -f "$tmp/keepalived.conf" -p "$tmp/ka.pid" -r "$tmp/vrrp.pid" \
    -c "$tmp/checkers.pid" >"$tmp/keepalived.log" 2>&1 &
ka=$!
sleep 8
kill -TERM "$ka"
wait "$ka" || true
ka=
sleep 1
kill -INT "$td"
wait "$td" || true
td=
cp "$tmp/v2.pcap" "$here/keepalived-2.2.7-v2.pcap"
grep "Truncating" "$tmp/keepalived.log" >"$here/keepalived-2.2.7-v2.log" || true
tshark -r "$tmp/v2.pcap" -T fields -E separator=';' -e frame.number -e ip.src -e ip.dst -e ip.ttl -e ip.dsfield \
    -e vrrp.version -e vrrp.type -e vrrp.virt_rtr_id -e vrrp.prio -e vrrp.addr_count -e vrrp.auth_type \
    -e vrrp.adver_int -e vrrp.checksum -e vrrp.ip_addr -e vrrp.auth_string >"$tmp/fields.txt"
python3 - "$tmp/v2.pcap" "$tmp/fields.txt" "$here/keepalived-2.2.7-v2.json" <<'PY'
import json, struct, sys
pcap, fields, out = sys.argv[1:]
data = open(pcap, 'rb').read()
frames, off = [], 24
while off < len(data):
    _, _, incl, _ = struct.unpack('<IIII', data[off:off + 16])
    frames.append(data[off + 16:off + 16 + incl].hex())
    off += 16 + incl
rows = [l.rstrip('\n').split(';') for l in open(fields) if l.strip()]
# One frame of each kind: (VRID, priority 0 or not); tshark decodes the fields independently of vipd.
seen, picked = set(), []
for row, hexframe in zip(rows, frames):
    num, src, dst, ttl, tos, ver, typ, vrid, prio, count, auth, adv, csum, addrs, authstr = row
    key = (vrid, prio == '0')
    if key in seen:
        continue
    seen.add(key)
    picked.append({
        'name': f'v2-vrid{vrid}' + ('-priority0' if prio == '0' else ''),
        'frame_hex': hexframe,
        'ip': {'src': src, 'dst': dst, 'ttl': int(ttl), 'tos': int(tos, 0)},
        'vrrp': {'version': int(ver), 'type': int(typ), 'vrid': int(vrid), 'priority': int(prio),
                 'count_addrs': int(count), 'auth_type': int(auth), 'advert_int_seconds': int(adv),
                 'checksum': int(csum, 0), 'addresses': addrs.split(','), 'auth_string': authstr},
    })
json.dump({'source': 'Keepalived v2.2.7 (Debian 12 package), default vrrp_version, captured by '
           'capture-keepalived-v2.sh; fields decoded by tshark', 'frames': picked}, open(out, 'w'), indent=1)
print(f'{len(frames)} frames captured, {len(picked)} kept')
PY
