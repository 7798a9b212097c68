"""The brand's data: product catalog (and, with the conversation issue, knowledge base and profile).

Files under `data/` are the demo brand's; a user points `ELMO_BRAND_DIR` at a folder with the same
files to run Elmo for their own brand.
"""
