"""Who may call the API: tokens and login rate limits."""
