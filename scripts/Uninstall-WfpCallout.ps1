<#
.SYNOPSIS
    Removes the wfpcallout driver from a test VM.

.DESCRIPTION
    1. Stops the WfpCallout service (the driver's unload completes pended
       connections, unregisters the callouts and deletes the provider,
       sublayer and callouts no filter names; it keeps those filters still
       name).
    2. With -Wfpctl: `wfpctl uninstall` deletes, in one transaction, every
       filter naming a wfpcallout callout and then the callouts, sublayer
       and provider. They are persistent (they survive reboots, so that
       persistent filters can name them): without this step they stay in
       the filter engine after the driver is gone. It runs after the stop,
       so that no driver runs on without its objects; run with the driver
       loaded it would still delete them (FwpmCalloutDeleteByKey0 refuses
       a callout only while filters name it) but the callouts would stay
       registered until the driver stops.
    3. Removes the driver package from the driver store:
       `pnputil /delete-driver <oemN.inf> /uninstall` (DiUninstallDriver),
       which also deletes the service and the installed .sys. The INF's
       [DefaultUninstall.NTamd64] (NTarm64) carries LegacyUninstall=1, so Windows 10
       version 1903 and later ignore it: uninstalling through the driver
       store is the supported way for a primitive driver package.
    4. If the service survived (an install by other means), deletes it with
       `sc.exe delete WfpCallout` and removes a stray
       %windir%\System32\drivers\wfpcallout.sys.
    5. Optionally removes the test certificate from the Root and
       TrustedPublisher stores.

.PARAMETER Wfpctl
    Path to wfpctl.exe; when given, the script runs `wfpctl uninstall`
    after stopping the driver. Without it the persistent wfpcallout
    objects (and the filters naming them) stay in the filter engine.

.PARAMETER RemoveCertificate
    Also remove the package's test certificate from LocalMachine\Root and
    LocalMachine\TrustedPublisher.

.PARAMETER CertificatePath
    The .cer to remove (its thumbprint is used). Without it, certificates
    whose subject is CN=WDRLocalTestCert are removed.

.EXAMPLE
    .\Uninstall-WfpCallout.ps1 -Wfpctl C:\tools\wfpctl.exe -RemoveCertificate
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [string] $Wfpctl,
    [switch] $RemoveCertificate,
    [string] $CertificatePath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'WfpCallout.Common.ps1')

Assert-Administrator

if ($Wfpctl -and -not (Test-Path -LiteralPath $Wfpctl)) { throw "wfpctl not found at $Wfpctl." }

if ($PSCmdlet.ShouldProcess($script:ServiceName, 'stop')) {
    Stop-WfpCalloutService
}

if ($Wfpctl) {
    if ($PSCmdlet.ShouldProcess('wfpcallout filters, callouts, sublayer and provider', 'wfpctl uninstall')) {
        # 1: an object is still referenced (FWP_E_IN_USE) and was kept, or
        # the uninstall failed; 4: the driver is still loaded. Both are
        # reported by wfpctl, neither stops the package removal.
        $code = Invoke-Native -FilePath $Wfpctl -ArgumentList @('uninstall') -AcceptExitCode @(0, 1, 4)
        if ($code -ne 0) {
            Write-Warning "wfpctl uninstall exited with $code (see above): run it again once the cause is gone."
        }
    }
} else {
    Write-Warning 'No -Wfpctl: the persistent wfpcallout provider, sublayer and callouts (and filters naming them) stay in the filter engine; run `wfpctl uninstall` to remove them.'
}

# The published name (oemN.inf) of our package in the driver store.
# Get-WindowsDriver lists third-party packages, independent of the UI language.
$packages = @(Get-WindowsDriver -Online | Where-Object { (Split-Path -Leaf $_.OriginalFileName) -ieq $script:InfName })
if ($packages.Count -eq 0) {
    Write-Host 'No wfpcallout package in the driver store.'
}
foreach ($package in $packages) {
    if ($PSCmdlet.ShouldProcess($package.Driver, 'pnputil /delete-driver /uninstall')) {
        Invoke-Native -FilePath 'pnputil.exe' -ArgumentList @('/delete-driver', $package.Driver, '/uninstall') -AcceptExitCode @(0, 3010) | Out-Null
        Write-Host "Removed $($package.Driver) ($($package.OriginalFileName))." -ForegroundColor Green
    }
}

if ($null -ne (Get-WfpCalloutService)) {
    if ($PSCmdlet.ShouldProcess($script:ServiceName, 'sc.exe delete')) {
        # 1072: marked for deletion already (a handle is still open).
        Invoke-Native -FilePath 'sc.exe' -ArgumentList @('delete', $script:ServiceName) -AcceptExitCode @(0, 1072) | Out-Null
    }
}
$stray = Join-Path $env:windir "System32\drivers\$script:SysName"
if (Test-Path -LiteralPath $stray) {
    if ($PSCmdlet.ShouldProcess($stray, 'remove')) {
        Remove-Item -LiteralPath $stray -Force
        Write-Host "Removed $stray."
    }
}

if ($RemoveCertificate) {
    $thumbprints = if ($CertificatePath) {
        @(Get-CertificateThumbprint -Path $CertificatePath)
    } else {
        @(Get-ChildItem -Path 'Cert:\LocalMachine\Root' | Where-Object { $_.Subject -eq $script:TestCertificateSubject } | ForEach-Object { $_.Thumbprint })
    }
    foreach ($store in @('Root', 'TrustedPublisher')) {
        foreach ($thumbprint in $thumbprints) {
            $path = "Cert:\LocalMachine\$store\$thumbprint"
            if ((Test-Path -LiteralPath $path) -and $PSCmdlet.ShouldProcess($path, 'remove certificate')) {
                Remove-Item -LiteralPath $path
                Write-Host "Removed certificate $thumbprint from LocalMachine\$store."
            }
        }
    }
}

Write-Host 'wfpcallout is uninstalled.' -ForegroundColor Green
