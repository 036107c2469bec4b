"""The app: settings, task registry, routing, producing messages, storing results."""
