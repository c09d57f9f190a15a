"""DICOM out and in: SR and Secondary Capture results, DICOMweb (PACS) and the C-STORE listener."""
