"""What the runs mean: objective, stability, reports, confirm runs, figures."""
