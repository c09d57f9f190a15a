"""What people take away: the PDF report and the export rows."""
