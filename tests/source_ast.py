"""`ast.parse` for the tests that check the code's structure, safe from the collector.

On CPython 3.11-3.12 a garbage collection inside `ast.parse` can run a finalizer that
parses too (an asyncio task dropped with its exception unretrieved logs it, and 3.11's
traceback formatting parses the source line), and the outer parse then fails with
"SystemError: AST constructor recursion depth mismatch": the AST builder's recursion
count is one per interpreter (fixed in 3.13, python/cpython#106905). A worker that ran
Orbax's restore of a damaged checkpoint holds such tasks; a suite run failed this way. With
a finalizer that parses, 191 of 200 parses of eeprune_jax/train.py failed here, and none
with the collector paused.
"""

import ast
import gc


def parse(*sources: str) -> list[ast.Module]:
  """`ast.parse` of each source, pending garbage collected first and the collector paused."""
  gc.collect()
  gc.disable()
  try:
    return [ast.parse(source) for source in sources]
  finally:
    gc.enable()
