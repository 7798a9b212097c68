"""The brand's data: product catalog, knowledge base and profile (docs/brand-data.md).

Files under `data/` are the demo brand's (Northwind Market); a user points `ELMO_BRAND_DIR` at a
folder with the same files to run Elmo for their own brand, and checks it with `elmo brand check`.
"""
