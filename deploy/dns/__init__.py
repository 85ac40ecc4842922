"""DNS: the records of the apps' domains follow the instance that serves them."""
