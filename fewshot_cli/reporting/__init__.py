"""`fewshot report`: gather run directories into one results table with the papers' numbers."""
