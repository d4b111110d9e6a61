"""An LSTM trained on hourly EHR data pooled across hospitals (a Nestor program)."""
