# Generated from hardware/profiles/*.toml by `python -m hardware.profiles`: do not edit (a test holds
# it to the files). Every profile's pins (one GPIO per role), each profile's sensors in the order the
# node reads them, and its metrics in the order of its rows.
PINS = {
    'batt_adc': 35,
    'onewire': 4,
    'rain': 27,
    'scl': 22,
    'sda': 21,
    'soil_adc': 34,
    'soil_power': 25,
    'uart_rx': 16,
    'uart_tx': 17,
}
PROFILES = {
    'air': ('pms5003', 'sht4x'),
    'forest': ('sht4x', 'soil', 'ds18b20', 'rain'),
    'river': ('jsnsr04t', 'ds18b20', 'sht4x', 'rain'),
}
COLUMNS = {
    'air': ('pm1_ugm3', 'pm25_ugm3', 'pm10_ugm3', 'air_temp_c', 'air_rh_pct'),
    'forest': ('air_temp_c', 'air_rh_pct', 'soil_vwc_pct', 'soil_temp_c', 'rain_mm'),
    'river': ('water_level_cm', 'water_temp_c', 'air_temp_c', 'air_rh_pct', 'rain_mm'),
}
