#!/usr/bin/env bash
# Static checks of deploy/: the Prometheus config and alerting rules pass
# promtool (check config, check rules, and the rule unit tests), and the
# Grafana dashboard is valid JSON with PromQL in every panel. Exits 77
# (skipped) when promtool is not installed.
set -euo pipefail
deploy="$1"
if ! command -v promtool >/dev/null; then
  echo "promtool is not installed (Debian package 'prometheus'; scripts/setup.sh installs it)"
  exit 77
fi
promtool check config "$deploy/prometheus/prometheus.yml"
promtool check rules "$deploy/prometheus/alerts.yml"
promtool test rules "$deploy/prometheus/alerts_test.yml"
python3 - "$deploy/grafana/harmamba-dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
targets = [t for p in d["panels"] for t in p.get("targets", [])]
assert targets, "no queries"
for t in targets:
    assert t.get("expr"), f"panel target without expr: {t}"
print(f"{sys.argv[1]}: {len(targets)} queries")
PY
