"""What comes in: decoding any supported file (DICOM included), preprocessing, finding inputs in folders."""
