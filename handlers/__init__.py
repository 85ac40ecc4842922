"""What a push means: `intake` receives and classifies deliveries, `gitops` turns a commit
into validated, rendered and planned instances."""
