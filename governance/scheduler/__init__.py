"""The yearly tax-law refresh: APScheduler in its own process, a resumable pipeline."""
