"""Model building blocks shared by services: sentence embeddings, classification heads, the artefact store."""
