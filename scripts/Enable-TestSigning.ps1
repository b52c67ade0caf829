<#
.SYNOPSIS
    Turns test signing on (or off) so that Windows loads the test-signed
    wfpcallout driver. Test VMs only.

.DESCRIPTION
    Runs `bcdedit /set testsigning on`. The setting takes effect at the next
    boot; until then the driver will not start (sc.exe start fails with
    error 577). With Secure Boot on, Windows refuses the change: turn Secure
    Boot off in the VM's firmware settings first (Hyper-V: VM Settings >
    Security > uncheck "Enable Secure Boot").

    After the reboot the desktop shows "Test Mode" in a corner.

.PARAMETER Off
    Turns test signing off instead.

.PARAMETER Restart
    Reboots right away when the setting changed.

.EXAMPLE
    .\Enable-TestSigning.ps1 -Restart
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [switch] $Off,
    [switch] $Restart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'WfpCallout.Common.ps1')

Assert-Administrator

$value = if ($Off) { 'off' } else { 'on' }

# Secure Boot forbids test signing; say so before bcdedit does, less clearly.
$secureBoot = $false
try {
    $secureBoot = Confirm-SecureBootUEFI
} catch {
    # Legacy BIOS boot, or a VM without UEFI: no Secure Boot.
    $secureBoot = $false
}
if ($secureBoot -and -not $Off) {
    throw 'Secure Boot is on, and Windows does not allow test signing with it. Turn Secure Boot off in the firmware (Hyper-V: VM Settings > Security), then run this script again.'
}

if ($PSCmdlet.ShouldProcess('boot configuration {current}', "bcdedit /set testsigning $value")) {
    Invoke-Native -FilePath 'bcdedit.exe' -ArgumentList @('/set', 'testsigning', $value) | Out-Null
    Write-Host "Test signing is set $value for the next boot." -ForegroundColor Green
    if ($Restart) {
        Write-Host 'Restarting now.'
        Restart-Computer -Force
    } else {
        Write-Host 'Reboot for it to take effect (Restart-Computer), then run Install-WfpCallout.ps1.' -ForegroundColor Yellow
    }
}
