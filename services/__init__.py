"""What the API, the activities and the workers share: settings, the Temporal client,
metrics, stuck orders, recovery of orders whose workflow never started."""
