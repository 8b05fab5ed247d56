"""MultiSpeak v4.1 head-end simulator: serves MR_Server for a simulated fleet and makes the
CB_Server callbacks, with fault injection."""
