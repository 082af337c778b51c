"""The daily and weekly emotion review report (情绪复盘报告): its periods (period.py), its
numbers read from the database (measures.py), its forms (render.py: text, WeCom markdown,
CSV, chart) and its sending (send.py: stored deliveries, the scheduled job)."""
