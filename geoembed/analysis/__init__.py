"""Looking at embeddings: similarity search and PCA previews."""
