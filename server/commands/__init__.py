"""What people change through the API: stock operations, master data, orders, pallets."""
