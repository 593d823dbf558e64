"""Tools for real providers: drift detection, recording and replayable cassettes."""
