"""tokenrefresh: keeps TikTok OAuth tokens fresh, encrypted at rest, from cron."""

__version__ = "0.1.0"

__all__ = ["__version__"]
