"""Studio views: thin. Parse, check membership and role, call a service, render."""
