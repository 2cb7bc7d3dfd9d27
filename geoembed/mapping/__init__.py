"""Land-cover maps: class maps from embeddings, area estimates and scoring against a reference."""
