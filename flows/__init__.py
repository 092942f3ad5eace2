"""flows package: Prefect flows and the command line (thin orchestration)."""

from flows.memory import configure_polars_allocator

configure_polars_allocator()  # before anything of the package loads polars
