"""Employee performance under different team structures: a three-level linear
mixed model (organisation, team within organisation, employee) over several
organisations' employee records. Entry point ``workforce_model.main:run``."""
