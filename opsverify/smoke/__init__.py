"""The smoke gate's engine: read-only probes and the verdicts over their answers.

Modules: `probes` (HTTP GET/HEAD with budgets), `verdicts` (is an answer what the profile
promised?), `metrics` (Prometheus scrape), `deps` (PostgreSQL/Redis reachability), `tls`
(certificate expiry), `rotation` (secret rotation).
"""
