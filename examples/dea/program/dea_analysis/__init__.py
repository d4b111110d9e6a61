"""Data Envelopment Analysis of retail sites pooled across retailers (a Nestor program)."""
