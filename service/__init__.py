"""IVIG formulary rules engine: declarative rulebooks decided through durable-rules."""
