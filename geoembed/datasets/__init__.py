"""Torch datasets over the triplet store, over scenes on the fly, and over weak labels."""
