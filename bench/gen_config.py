"""Writes a tariffd config for the benchmark fleet: the shipped example's
chips, tariffs and programmes, plus CLUSTERS clusters named bench-NNNNN spread
over the example's three sites and two tenants.

usage: gen_config.py CLUSTERS OUT_DIR [TENANT]   (writes OUT_DIR/tariffd.conf and
OUT_DIR/conf.d; with TENANT every cluster belongs to it)"""
import os
import shutil
import sys

clusters, out = int(sys.argv[1]), sys.argv[2]
only_tenant = sys.argv[3] if len(sys.argv) > 3 else None
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
if os.path.exists(out):
    shutil.rmtree(out)
shutil.copytree(os.path.join(root, "etc"), out, ignore=shutil.ignore_patterns("sample"))
sites = ["qingyang-1", "gui-an-1", "ulanqab-1"]
inventories = ["ascend-910c*3072", "ascend-910c*2048, h20*1024", "h20*2048"]
with open(os.path.join(out, "conf.d", "90-bench.conf"), "w") as f:
    for c in range(clusters):
        tenant = only_tenant or ["bytedance", "tencent"][c % 2]
        f.write(f"[cluster bench-{c:05d}]\ntenant = {tenant}\n"
                f"site = {sites[c % 3]}\ninventory = {inventories[c % 3]}\n"
                "transformer_kva = 20000\ncontract_kw = 15000\n")
