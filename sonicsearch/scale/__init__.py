"""Scaling past one process: distributed embedding extraction (ray_embed.py, Ray Data).

The vector-index side (Milvus) is in sonicsearch/index/backends; docs/scale.md has the plan
and the measured costs.
"""
