"""What the RPM-family backends (dnf, yum, zypper) share: versions, the rpm database,
advisories in updateinfo.xml, the environment that keeps rpm inside a target root."""
