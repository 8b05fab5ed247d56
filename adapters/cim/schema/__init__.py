"""meterhub's own XSD subsets of IEC 61968-100 and 61968-9 MeterReadings."""
