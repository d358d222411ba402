"""The real JVM servers (Kafka, Fluss, the QuickFIX/J venue), started from deploy/."""
