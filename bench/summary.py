"""Turns target/bench/*.json (written by bench/run.sh) into the Markdown table of BENCHMARKS.md."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
reports = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}

print("| run | users | best rate held (msg/s) | deliveries/s | p50 / p99 / p99.9 ms | ack p99 ms | lost | RSS per idle conn | connect all (s) |")
print("|---|---|---|---|---|---|---|---|---|")
for name, r in reports.items():
    best = r.get("best")
    conn = f"{r['connect_seconds']:.1f}" if "connect_seconds" in r else "–"
    if r["scenario"] == "idle":
        per = r.get("rss_per_connection_kib")
        rss = f"{per:.1f} KiB" if per is not None else "n/a"
        print(f"| {name} | {r['users']} | – | – | – | – | – | {rss} | {conn} |")
        continue
    if not best:
        print(f"| {name} | {r['users']} | none held | | | | | | {conn} |")
        continue
    ack = f"{best['ack_p99_ms']:.1f}" if r["target"] == "palaver" else "no acks"
    print(
        f"| {name} | {r['users']} | {best['messages_per_s']:,.0f} | {best['deliveries_per_s']:,.0f} | "
        f"{best['deliver_p50_ms']:.1f} / {best['deliver_p99_ms']:.1f} / {best['deliver_p999_ms']:.1f} | {ack} | {best['lost']} | | {conn} |"
    )

def best_rate(name, key="messages_per_s"):
    r = reports.get(name)
    return (r or {}).get("best", {}) and r["best"][key]

print()
for scen, key in [("private100", "messages_per_s"), ("private10000", "messages_per_s"), ("group16", "deliveries_per_s")]:
    ref, pal = best_rate(f"reference-{scen}", key), best_rate(f"palaver-mysql-{scen}", key)
    if ref and pal:
        print(f"- {scen}: Palaver (MariaDB) / reference = {pal / ref:.1f}x ({key})")
for scen in ["private100", "private10000"]:
    alone, pal = best_rate(f"alone-{scen}"), best_rate(f"palaver-mysql-{scen}")
    if alone and pal:
        print(f"- {scen}: Palaver (MariaDB) / the Socket.IO transport alone = {pal / alone:.0%} (alone: {alone:,.0f} msg/s)")
pal = reports.get("palaver-mysql-idle")
for other, label in [("alone", "the Socket.IO transport alone"), ("reference", "reference")]:
    ref = reports.get(f"{other}-idle")
    if ref and pal and ref.get("rss_per_connection_kib") and pal.get("rss_per_connection_kib"):
        print(f"- idle: {pal['rss_per_connection_kib']:.1f} KiB (Palaver) vs {ref['rss_per_connection_kib']:.1f} KiB ({label}) per connection")
ref = reports.get("reference-idle")
if ref and pal and "connect_seconds" in ref and "connect_seconds" in pal:
    print(f"- connecting {pal['users']:,} users: {pal['connect_seconds']:.1f} s (Palaver) vs {ref['connect_seconds']:.1f} s (reference)")
for who in ["palaver-mysql", "alone"]:
    small, big = best_rate(f"{who}-private100"), best_rate(f"{who}-private10000")
    if small and big:
        print(f"- {who}: 10,000 users hold {big / small:.0%} of the 100-user rate ({big:,.0f} of {small:,.0f} msg/s)")
