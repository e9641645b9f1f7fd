"""What agents refer to: queues, roles, departments, account types."""
