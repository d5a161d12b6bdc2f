"""The lab: replay conversations under strategies × budgets and measure cost and retention.

`harness` holds `compare`/`acompare`, `_runner` the replay and probes, `_specs` the run record
and spec parsing, `report` the `Report` table, `plots` its figures, `metrics/` one module per
metric family. May import the core values, `formats`, `scoring`, `strategies`, `summarizers`
and `providers`; never `live` or `widgets`.
"""
