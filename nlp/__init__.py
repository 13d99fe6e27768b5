"""Text analysis: language, masking, sentiment, categories, aspects and flags; plain data in and out."""
