"""Reports over the stock, its value and its history."""
